"""Prints the MSK IAM auth token that AWS's aws-msk-iam-sasl-signer-python makes for the given
credentials, region and signing time: the referee the k2mc signer is compared with byte for byte
(tests/it/msk_iam.rs). The clock is pinned by replacing botocore's time source for SigV4."""
import argparse
import datetime

import botocore.auth
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from botocore.credentials import CredentialProvider, Credentials


class Fixed(CredentialProvider):
    METHOD = "k2mc-test"

    def __init__(self, credentials):
        super().__init__()
        self.credentials = credentials

    def load(self):
        return self.credentials


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--session-token")
    p.add_argument("--region", required=True)
    p.add_argument("--epoch", type=int, required=True, help="signing time, seconds since 1970 UTC")
    a = p.parse_args()
    at = datetime.datetime.fromtimestamp(a.epoch, datetime.timezone.utc)
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: (
        at.replace(tzinfo=None) if remove_tzinfo else at
    )
    provider = Fixed(Credentials(a.access_key, a.secret_key, a.session_token))
    token, _expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
        a.region, provider
    )
    print(token)


if __name__ == "__main__":
    main()
