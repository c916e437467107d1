//! Signature verification: rebuilds the canonical string from the request exactly as the SDKs
//! build it (`docs/maxcompute-protocol.md` §1) and compares v2 or v4 signatures; rejects unsigned requests, unknown
//! AccessKey ids and a `Date` more than 15 minutes off.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use k2mc::maxcompute::{
    CanonicalRequest, Credentials, SignatureVersion, authorization, decode_path_and_query,
};

use crate::error::ApiError;

/// The largest clock skew accepted, as MaxCompute.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Checks the request's `Authorization`. `prefix` is the endpoint's path prefix (`/api` for REST).
pub fn verify(
    credentials: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    prefix: &str,
) -> Result<(), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let auth = header("authorization");
    let Some(rest) = auth.strip_prefix("ODPS ") else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the request is not signed: an 'Authorization: ODPS …' header is required",
        ));
    };
    let Some((key_part, _signature)) = rest.rsplit_once(':') else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "malformed Authorization header",
        ));
    };
    let mut parts = key_part.split('/');
    let access_id = parts.next().unwrap_or_default();
    if access_id != credentials.access_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            format!("unknown AccessKey id '{access_id}'"),
        ));
    }
    let version = match (parts.next(), parts.next()) {
        (Some(_date), Some(region)) => SignatureVersion::V4 {
            region: region.to_owned(),
        },
        _ => SignatureVersion::V2,
    };
    let date = header("date");
    let when = httpdate::parse_http_date(date).map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidArgument",
            format!("missing or bad Date header '{date}'"),
        )
    })?;
    let when: chrono::DateTime<chrono::Utc> = when.into();
    if (chrono::Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            format!(
                "the difference between the request time {date} and the server's time is too large"
            ),
        ));
    }
    let raw = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let relative = raw.strip_prefix(prefix).unwrap_or(raw);
    let (path, params) = decode_path_and_query(relative);
    let mut canonical = CanonicalRequest {
        method: method.as_str().to_owned(),
        content_md5: header("content-md5").to_owned(),
        content_type: header("content-type").to_owned(),
        date: date.to_owned(),
        path,
        params,
        ..CanonicalRequest::default()
    };
    for (name, value) in headers {
        if name.as_str().starts_with("x-odps-") {
            canonical.odps_headers.insert(
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            );
        }
    }
    let expected = authorization(
        credentials,
        &version,
        &canonical,
        &when.format("%Y%m%d").to_string(),
    );
    if expected != auth {
        tracing::debug!(canonical = %canonical.canonical_string(), "Signature mismatch.");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "SignatureNotMatch",
            "the request signature we calculated does not match the signature you provided; check your AccessKey secret and signing method",
        ));
    }
    Ok(())
}
