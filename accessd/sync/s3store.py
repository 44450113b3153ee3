"""The S3 store: bundles and logs in a bucket of Amazon S3 or any S3-compatible
service (MinIO, Ceph RGW, Garage, Alibaba OSS, Wasabi, ...), through boto3.

  s3://bucket/prefix                              Amazon S3 (region from the usual
                                                  AWS configuration, or region=)
  s3://bucket/prefix?endpoint=https://minio:9000  another service's endpoint
  options (query): endpoint=URL, region=NAME, profile=NAME (a profile of the AWS
                   credentials file), addressing=path|virtual (path: default with
                   an endpoint; most S3-compatible services want it)

Keys never go in the URL (it is kept in the door's config and the site's
database): boto3's usual sources give them, e.g. AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in the environment, or AWS_SHARED_CREDENTIALS_FILE with
profile=. A PUT is atomic in S3 (an object is there whole or not at all) and
carries Content-MD5, so the server refuses a body damaged on the way; names are
the same as in every store, so a batch uploaded twice is the same object.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlparse

from ..errors import ConfigError
from .names import StoreError, check_name

OPTIONS = ("endpoint", "region", "profile", "addressing")


def parse_url(url: str) -> dict:
    """bucket, prefix and options of an s3:// URL; ConfigError says what is wrong."""
    u = urlparse(url)
    if u.scheme != "s3" or not u.hostname:
        raise ConfigError(f"store URL {url!r}: an S3 store is s3://bucket/prefix")
    if u.username or u.password:
        raise ConfigError(f"store URL {url!r}: S3 keys do not go in the URL (it is stored "
                          "in configs); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                          "AWS_SHARED_CREDENTIALS_FILE with profile=")
    try:
        query = parse_qs(u.query, strict_parsing=bool(u.query), keep_blank_values=False)
    except ValueError:
        raise ConfigError(f"store URL {url!r}: the options after '?' are not "
                          "name=value&name=value") from None
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"store URL {url!r}: unknown option {unknown[0]!r} "
                          f"(known: {', '.join(OPTIONS)})")
    opts = {k: v[-1] for k, v in query.items()}
    if "endpoint" in opts:
        e = urlparse(opts["endpoint"])
        if e.scheme not in ("http", "https") or not e.hostname:
            raise ConfigError(f"store URL {url!r}: endpoint must be http(s)://host[:port], "
                              f"got {opts['endpoint']!r}")
    if opts.get("addressing", "path") not in ("path", "virtual"):
        raise ConfigError(f"store URL {url!r}: addressing must be path or virtual")
    prefix = u.path.strip("/")
    return {"bucket": u.netloc, "prefix": prefix + "/" if prefix else "", **opts}


class S3Store:
    def __init__(self, url: str, timeout: float = 15.0):
        p = parse_url(url)
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError("an s3:// store needs boto3: pip install 'accessd[s3]'") from None
        self.bucket, self.prefix = p["bucket"], p["prefix"]
        self.timeout = timeout
        opts = "&".join(f"{k}={p[k]}" for k in OPTIONS if k in p)
        self._url = f"s3://{self.bucket}/{self.prefix}" + (f"?{opts}" if opts else "")
        addressing = p.get("addressing", "path" if "endpoint" in p else "auto")
        config = Config(connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": addressing},
                        # CRC checksums on every request (boto3 >= 1.36) are refused by
                        # many S3-compatible services; Content-MD5 is sent instead.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        try:
            session = boto3.session.Session(profile_name=p.get("profile"))
            self.client = session.client("s3", endpoint_url=p.get("endpoint"),
                                         region_name=p.get("region") or session.region_name
                                         or "us-east-1", config=config)
        except Exception as exc:  # e.g. ProfileNotFound
            raise StoreError(f"{self._url}: {exc}") from None

    @property
    def url(self) -> str:
        return self._url

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def _fail(self, op: str, name: str, exc: Exception) -> StoreError:
        """One clear line for what went wrong, naming the object."""
        from botocore import exceptions as bx
        where = f"{op} s3://{self.bucket}/{self.prefix}{name}"
        if isinstance(exc, bx.NoCredentialsError):
            return StoreError(f"{where}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE and "
                              "profile= in the URL)")
        if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
            return StoreError(f"{where}: no answer within {self.timeout:g} s")
        if isinstance(exc, bx.EndpointConnectionError):
            return StoreError(f"{where}: cannot connect to {exc.kwargs.get('endpoint_url')}")
        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {})
            code = err.get("Code", "?")
            if code == "NoSuchBucket":
                return StoreError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                        "403"):
                return StoreError(f"{where}: refused by the server ({code}): check the "
                                  "keys and the bucket policy")
            return StoreError(f"{where}: server answered {code}: {err.get('Message', '')}"
                              .rstrip(": "))
        return StoreError(f"{where}: {type(exc).__name__}: {exc}")

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5)
        except Exception as exc:
            raise self._fail("PUT", name, exc) from None

    def get(self, name: str) -> bytes | None:
        key = self._key(name)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"].read()
        except Exception as exc:
            from botocore.exceptions import ClientError
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code")
                if code in ("NoSuchKey", "404"):
                    return None
            raise self._fail("GET", name, exc) from None
        length = resp.get("ContentLength")
        if length is not None and length != len(body):
            raise StoreError(f"GET s3://{self.bucket}/{key}: the body was cut short "
                             f"({len(body)} of {length} bytes)")
        return body

    def list(self, prefix: str) -> list[str]:
        return sorted(self.versions(prefix))

    def versions(self, prefix: str) -> dict[str, str]:
        """Every name under `prefix` with its ETag (which changes when it is replaced)."""
        out: dict[str, str] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/"))
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix):]
                    if not name.rsplit("/", 1)[-1].startswith("."):
                        out[name] = obj.get("ETag", "") + f"-{obj.get('Size')}"
        except Exception as exc:
            raise self._fail("LIST", prefix, exc) from None
        return out
