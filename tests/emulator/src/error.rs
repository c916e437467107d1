//! Error responses in the two formats the SDKs parse: REST XML `<Error>` with code, message,
//! request id and host id, and Tunnel JSON `{"Code","Message"}` with the request id in a header.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Which API a request came through, and so which error format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Rest,
    Tunnel,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub api: Api,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            api: Api::Rest,
        }
    }

    pub fn for_api(mut self, api: Api) -> Self {
        self.api = api;
        self
    }

    pub fn internal(message: String) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn io(e: std::io::Error) -> Self {
        ApiError::internal(format!("storage failed: {e}"))
    }

    pub fn no_such_table(project: &str, table: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchTable",
            format!("The specified table {project}.{table} does not exist"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = format!("{:032x}", rand::random::<u128>());
        let mut resp = match self.api {
            Api::Rest => {
                // REST tables answer `NoSuchObject`, the code pyodps maps a missing object to.
                let code = if self.code == "NoSuchTable" {
                    "NoSuchObject"
                } else {
                    &self.code
                };
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId><HostId>localhost</HostId></Error>",
                    quick_xml::escape::escape(code),
                    quick_xml::escape::escape(&self.message)
                );
                (self.status, [("Content-Type", "application/xml")], body).into_response()
            }
            Api::Tunnel => {
                let body = serde_json::json!({"Code": self.code, "Message": self.message, "RequestId": request_id});
                (
                    self.status,
                    [("Content-Type", "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-odps-request-id", v);
        }
        resp
    }
}
