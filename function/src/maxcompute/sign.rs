//! Request signing (`docs/maxcompute-protocol.md` §1): the canonical string, the v2 and v4 `Authorization`
//! headers and the STS token. The client signs every REST and Tunnel call with it; the emulator
//! rebuilds the same canonical string to verify signatures.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use k2mc_formats::secret::Secret;

/// An AccessKey pair, optionally temporary (STS) with its security token.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_id: String,
    pub access_key: Secret,
    pub sts_token: Option<Secret>,
}

impl Credentials {
    /// A long-lived AccessKey pair.
    pub fn new(access_id: impl Into<String>, access_key: impl Into<String>) -> Self {
        Credentials {
            access_id: access_id.into(),
            access_key: Secret::new(access_key),
            sts_token: None,
        }
    }
}

/// Which signature scheme to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// HMAC-SHA1 with the AccessKey secret; what pyodps uses for endpoints without a region.
    #[default]
    V2,
    /// HMAC-SHA1 with a key derived from the secret, the UTC date and the region.
    V4 { region: String },
}

impl SignatureVersion {
    /// The version pyodps picks for an endpoint host: v4 for
    /// `service.<region>.maxcompute.aliyun[-inc].com`, v2 otherwise.
    pub fn for_host(host: &str) -> Self {
        let parts: Vec<&str> = host.split('.').collect();
        match parts.as_slice() {
            ["service", region, product, domain, "com"]
                if (4..=10).contains(&product.len())
                    && product.bytes().all(|b| b.is_ascii_lowercase())
                    && (domain.len() == 6 || domain.ends_with("-inc")) =>
            {
                SignatureVersion::V4 {
                    region: (*region).to_owned(),
                }
            }
            _ => SignatureVersion::V2,
        }
    }
}

/// What goes into the canonical string: everything about a request that is signed.
#[derive(Debug, Clone, Default)]
pub struct CanonicalRequest {
    pub method: String,
    pub content_md5: String,
    pub content_type: String,
    /// The `Date` header, RFC 1123.
    pub date: String,
    /// `x-odps-*` headers with lower-case names.
    pub odps_headers: BTreeMap<String, String>,
    /// The decoded path relative to the endpoint (`/projects/p/tables/t`, no `/api`).
    pub path: String,
    /// Decoded query parameters; an empty value is a bare flag. Later duplicates win.
    pub params: BTreeMap<String, String>,
}

impl CanonicalRequest {
    /// The string that is HMAC'ed, lines joined by `\n` with no trailing newline.
    pub fn canonical_string(&self) -> String {
        let mut signed: BTreeMap<&str, String> = BTreeMap::new();
        signed.insert("content-md5", self.content_md5.clone());
        signed.insert("content-type", self.content_type.clone());
        signed.insert("date", self.date.clone());
        for (k, v) in &self.odps_headers {
            signed.insert(k, format!("{k}:{v}"));
        }
        for (k, v) in &self.params {
            if k.starts_with("x-odps-") {
                signed.insert(k, format!("{k}:{v}"));
            }
        }
        let mut out = self.method.to_ascii_uppercase();
        for line in signed.values() {
            out.push('\n');
            out.push_str(line);
        }
        out.push('\n');
        out.push_str(&self.path);
        if !self.params.is_empty() {
            out.push('?');
            let joined: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            out.push_str(&joined.join("&"));
        }
        out
    }
}

/// The value of the `Authorization` header for `request`. `utc_date` is `yyyymmdd` of the
/// request's `Date`, used by v4 only.
pub fn authorization(
    credentials: &Credentials,
    version: &SignatureVersion,
    request: &CanonicalRequest,
    utc_date: &str,
) -> String {
    let canonical = request.canonical_string();
    match version {
        SignatureVersion::V2 => {
            let sig = hmac_sha1(credentials.access_key.expose().as_bytes(), &canonical);
            format!("ODPS {}:{sig}", credentials.access_id)
        }
        SignatureVersion::V4 { region } => {
            let key = v4_key(credentials.access_key.expose(), utc_date, region);
            let sig = hmac_sha1(&key, &canonical);
            format!(
                "ODPS {}/{utc_date}/{region}/odps/aliyun_v4_request:{sig}",
                credentials.access_id
            )
        }
    }
}

/// The v4 signing key: HMAC-SHA256 chained over the date, region, service and terminator.
pub fn v4_key(secret: &str, utc_date: &str, region: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), utc_date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"odps");
    hmac_sha256(&k_service, b"aliyun_v4_request")
}

/// `base64(HMAC-SHA1(key, message))`.
pub(crate) fn hmac_sha1(key: &[u8], message: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Splits a raw `path?query` (as it appears on the wire, relative to the endpoint) into the
/// decoded path and parameters exactly as pyodps does before signing: the whole string is
/// percent-decoded, then the query is split on `&` and each pair decoded again.
pub fn decode_path_and_query(raw: &str) -> (String, BTreeMap<String, String>) {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    let (path, query) = decoded.split_once('?').unwrap_or((&decoded, ""));
    let params = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (path.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

    fn creds() -> Credentials {
        Credentials::new("test-access-id", "test-secret-key")
    }

    fn request(
        method: &str,
        raw: &str,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> CanonicalRequest {
        let (path, params) = decode_path_and_query(raw);
        CanonicalRequest {
            method: method.into(),
            content_md5: String::new(),
            content_type: content_type.into(),
            date: DATE.into(),
            odps_headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            path,
            params,
        }
    }

    fn check(req: &CanonicalRequest, version: SignatureVersion, canonical: &str, auth: &str) {
        assert_eq!(req.canonical_string(), canonical.replace("\\n", "\n"));
        assert_eq!(authorization(&creds(), &version, req, "20240101"), auth);
    }

    const UA: (&str, &str) = ("x-odps-user-agent", "test-agent");

    #[test]
    fn brief_vectors_v1_to_v6() {
        let v1 = request(
            "GET",
            "/projects/my_proj/tables/my_table?curr_project=my_proj",
            "",
            &[UA],
        );
        check(
            &v1,
            SignatureVersion::V2,
            "GET\\n\\n\\nMon, 01 Jan 2024 00:00:00 GMT\\nx-odps-user-agent:test-agent\\n/projects/my_proj/tables/my_table?curr_project=my_proj",
            "ODPS test-access-id:wY1laQmT9snT8E/W+4TQ0+oAnV4=",
        );
        check(
            &request(
                "POST",
                "/projects/my_proj/instances?curr_project=my_proj",
                "application/xml",
                &[UA],
            ),
            SignatureVersion::V2,
            "POST\\n\\napplication/xml\\nMon, 01 Jan 2024 00:00:00 GMT\\nx-odps-user-agent:test-agent\\n/projects/my_proj/instances?curr_project=my_proj",
            "ODPS test-access-id:PR4U5uSOIG/O7PF/YmpnObkX+9U=",
        );
        check(
            &request(
                "POST",
                "/projects/my_proj/tables/my_table?uploads=1&reload=False&partition=ds%3D20240101%2Chr%3D00&curr_project=my_proj",
                "",
                &[("x-odps-tunnel-version", "6"), UA],
            ),
            SignatureVersion::V2,
            "POST\\n\\n\\nMon, 01 Jan 2024 00:00:00 GMT\\nx-odps-tunnel-version:6\\nx-odps-user-agent:test-agent\\n/projects/my_proj/tables/my_table?curr_project=my_proj&partition=ds=20240101,hr=00&reload=False&uploads=1",
            "ODPS test-access-id:mYkg3TrRUTF6b04kZAjSB1HQ/MY=",
        );
        check(
            &request(
                "PUT",
                "/projects/my_proj/tables/my_table?arrow&uploadid=UPID123&blockid=7&curr_project=my_proj",
                "application/octet-stream",
                &[("x-odps-tunnel-version", "6")],
            ),
            SignatureVersion::V2,
            "PUT\\n\\napplication/octet-stream\\nMon, 01 Jan 2024 00:00:00 GMT\\nx-odps-tunnel-version:6\\n/projects/my_proj/tables/my_table?arrow&blockid=7&curr_project=my_proj&uploadid=UPID123",
            "ODPS test-access-id:cOEOq8hpg98BhfHa85IEYcAkr9M=",
        );
        // V5: STS signs like v2; the token header is added after signing and is not signed.
        check(
            &request("GET", "/projects/my_proj?curr_project=my_proj", "", &[]),
            SignatureVersion::V2,
            "GET\\n\\n\\nMon, 01 Jan 2024 00:00:00 GMT\\n/projects/my_proj?curr_project=my_proj",
            "ODPS test-access-id:gwIdNHeRe1t3X0kWdi4sxDeh3q4=",
        );
        check(
            &v1,
            SignatureVersion::V4 {
                region: "cn-hangzhou".into(),
            },
            "GET\\n\\n\\nMon, 01 Jan 2024 00:00:00 GMT\\nx-odps-user-agent:test-agent\\n/projects/my_proj/tables/my_table?curr_project=my_proj",
            "ODPS test-access-id/20240101/cn-hangzhou/odps/aliyun_v4_request:xwo6g9G7qqNu0f7TXdvm7bjV0Uo=",
        );
    }

    #[test]
    fn picks_v4_for_region_endpoints_like_pyodps() {
        assert_eq!(
            SignatureVersion::for_host("service.cn-hangzhou.maxcompute.aliyun.com"),
            SignatureVersion::V4 {
                region: "cn-hangzhou".into()
            }
        );
        assert_eq!(
            SignatureVersion::for_host("service.cn-shanghai.maxcompute.aliyun-inc.com"),
            SignatureVersion::V4 {
                region: "cn-shanghai".into()
            }
        );
        assert_eq!(
            SignatureVersion::for_host("127.0.0.1"),
            SignatureVersion::V2
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::new("id", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
