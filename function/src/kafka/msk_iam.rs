//! Amazon MSK IAM access control for the Kafka connection (`docs/architecture.md`, "Kafka
//! authentication"): the SASL OAUTHBEARER token is a SigV4 query-signed
//! `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect` (service
//! `kafka-cluster`, 15 minutes), with a `User-Agent` parameter naming the client, as URL-safe
//! base64 without padding: the scheme of AWS's `aws-msk-iam-sasl-signer` libraries, whose Python
//! one the tests compare byte for byte. rskafka asks for a token at every SASL login, so every
//! new connection signs afresh from the function's current credentials (the Lambda role, or the
//! default provider chain locally) and a long invocation never presents an expired token.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use thiserror::Error;

/// How long a token is valid (what MSK accepts and the AWS signers use).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The signing service name of MSK's IAM access control.
const SERVICE: &str = "kafka-cluster";

/// What a query value keeps unencoded: RFC 3986's unreserved characters (as SigV4 and the AWS
/// signers encode query strings).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why no token could be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MskIamError {
    /// The AWS credential chain gave no credentials.
    #[error(
        "kafka aws-msk-iam: no AWS credentials for the token ({reason}); the function's role (or locally AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile) provides them"
    )]
    Credentials { reason: String },
    /// SigV4 refused the inputs.
    #[error("kafka aws-msk-iam: cannot sign the token: {reason}")]
    Sign { reason: String },
    /// No region in the config, the broker host or the AWS SDK.
    #[error(
        "kafka aws-msk-iam: the cluster's region is unknown (not in the broker host {host}); set kafka.sasl.region"
    )]
    NoRegion { host: String },
}

impl MskIamError {
    /// True when asking again may succeed (a credential source that failed for now).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MskIamError::Credentials { .. })
    }
}

/// The token for `credentials` in `region` signed at `time`, with `user_agent` as its
/// `User-Agent` parameter (not signed: it names the client to the broker's logs).
pub fn token_at(
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    user_agent: &str,
) -> Result<String, MskIamError> {
    let host = format!("kafka.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| MskIamError::Sign {
            reason: e.to_string(),
        })?
        .into();
    // The payload hash is that of the empty body (SigV4 query signing as AWS's MSK signers do
    // it; only S3 presigns with UNSIGNED-PAYLOAD).
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| MskIamError::Sign {
        reason: e.to_string(),
    })?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| MskIamError::Sign {
            reason: e.to_string(),
        })?
        .into_parts();
    let (_, params) = instructions.into_parts();
    // The query in the order the AWS signers write it: the action, the SigV4 parameters, the
    // session token, the signature, then the user agent.
    let value = |name: &str| {
        params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    };
    let mut query = String::from("Action=kafka-cluster%3AConnect");
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        if let Some(v) = value(name) {
            query.push_str(&format!("&{name}={}", utf8_percent_encode(v, QUERY_VALUE)));
        }
    }
    query.push_str(&format!(
        "&User-Agent={}",
        utf8_percent_encode(user_agent, QUERY_VALUE)
    ));
    let signed = format!("https://{host}/?{query}");
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed))
}

/// The region in an MSK broker host name (`b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com`,
/// or the `kafka-serverless` form), if it is one.
pub fn region_from_host(bootstrap: &str) -> Option<String> {
    let host = bootstrap.rsplit_once(':').map_or(bootstrap, |(h, _)| h);
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels
        .iter()
        .position(|l| *l == "kafka" || *l == "kafka-serverless")?;
    let region = labels.get(at + 1)?;
    (labels.get(at + 2) == Some(&"amazonaws")).then(|| (*region).to_owned())
}

/// Makes tokens for one cluster from a credential provider (the AWS SDK's default chain).
#[derive(Clone)]
pub struct MskIamSigner {
    region: String,
    provider: SharedCredentialsProvider,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamSigner {
    /// A signer for `region` (`None`: from the first broker host, else `sdk_region`).
    pub fn new(
        region: Option<&str>,
        bootstrap: &[String],
        sdk_region: Option<&str>,
        provider: SharedCredentialsProvider,
    ) -> Result<Self, MskIamError> {
        let first = bootstrap.first().cloned().unwrap_or_default();
        let region = region
            .map(str::to_owned)
            .or_else(|| region_from_host(&first))
            .or_else(|| sdk_region.map(str::to_owned))
            .ok_or(MskIamError::NoRegion { host: first })?;
        Ok(MskIamSigner { region, provider })
    }

    /// The region the tokens are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A token signed now from the provider's current credentials.
    pub async fn token(&self) -> Result<String, MskIamError> {
        let credentials =
            self.provider
                .provide_credentials()
                .await
                .map_err(|e| MskIamError::Credentials {
                    reason: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                })?;
        token_at(
            &credentials,
            &self.region,
            SystemTime::now(),
            &format!("k2mc/{}", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_msk_broker_hosts_only() {
        for (host, region) in [
            (
                "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098",
                Some("eu-west-1"),
            ),
            (
                "boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com:9098",
                Some("us-east-2"),
            ),
            ("127.0.0.1:9092", None),
            ("kafka.internal:9092", None),
        ] {
            assert_eq!(region_from_host(host).as_deref(), region, "{host}");
        }
    }

    #[test]
    fn a_token_is_a_signed_connect_request_in_url_safe_base64() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = token_at(&creds, "us-east-1", time, "k2mc/test").expect("token");
        assert!(!token.contains(['=', '+', '/']), "{token}");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .expect("base64"),
        )
        .expect("utf-8");
        assert!(url.starts_with(
            "https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="
        ), "{url}");
        assert!(url.ends_with("&User-Agent=k2mc%2Ftest"), "{url}");
    }
}
