"""Credential sources against real things: moto's ECR, helper scripts on PATH, files."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from controller.credentials.dockerconfig import DockerConfigSource
from controller.credentials.ecr import EcrSource
from controller.credentials.helper import HelperSource
from controller.credentials.kinds import EcrSettings
from controller.credentials.password import PasswordSource
from controller.errors import CredentialError

SECRET = "s3cr3t-never-shown"
ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MOTO_TOKEN_EXPIRY = datetime(2015, 1, 1, tzinfo=UTC)
"""moto's ECR answers every GetAuthorizationToken with this ``expiresAt``."""


@pytest.fixture
def aws(moto_server, monkeypatch):
    """The default credential chain finds moto's dummy keys in the environment."""
    for name, value in moto_server.aws_env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


class TestEcrSource:
    async def test_token_from_response(self, aws):
        """Username, password and expiry come from the GetAuthorizationToken response."""
        source = EcrSource(EcrSettings(region=aws.region, endpoint_url=aws.endpoint_url),
                           registry=ECR_HOST)
        credential = await source.fetch()
        assert source.expiring
        assert credential.username == "AWS"
        assert credential.password.reveal() == "123456789012-auth-token"
        assert credential.expires_at == MOTO_TOKEN_EXPIRY
        assert not credential.identity_token

    async def test_registry_id_is_requested(self, aws):
        """``registry_id`` is sent as ``registryIds``; moto's token names the registry."""
        settings = EcrSettings(region=aws.region, endpoint_url=aws.endpoint_url,
                               registry_id="999999999999")
        host = "999999999999.dkr.ecr.us-east-1.amazonaws.com"
        credential = await EcrSource(settings, registry=host).fetch()
        assert credential.password.reveal() == "999999999999-auth-token"

    async def test_token_for_another_registry_is_refused(self, aws):
        """A token issued for another account or region would 401 on pull: refuse it."""
        settings = EcrSettings(region=aws.region, endpoint_url=aws.endpoint_url,
                               registry_id="999999999999")
        with pytest.raises(CredentialError, match="issued the token for 999999999999"):
            await EcrSource(settings, registry=ECR_HOST).fetch()

    async def test_assumed_role(self, aws):
        """With ``role_arn`` the token is fetched as the assumed role (STS at the same endpoint)."""
        settings = EcrSettings(region=aws.region, endpoint_url=aws.endpoint_url,
                               role_arn="arn:aws:iam::123456789012:role/pull-tokens")
        credential = await EcrSource(settings, registry=ECR_HOST).fetch()
        assert credential.username == "AWS"

    async def test_aws_error_is_credential_error(self, aws, aiohttp_server):
        """An AWS refusal becomes a CredentialError naming the call, the code and the registry."""
        async def deny(request: web.Request) -> web.Response:
            body = {"__type": "AccessDeniedException",
                    "message": "not authorized to perform: ecr:GetAuthorizationToken"}
            return web.json_response(body, status=400,
                                     content_type="application/x-amz-json-1.1")

        app = web.Application()
        app.router.add_post("/", deny)
        server = await aiohttp_server(app, host="127.0.0.1")
        settings = EcrSettings(region=aws.region, endpoint_url=str(server.make_url("/")))
        with pytest.raises(CredentialError) as caught:
            await EcrSource(settings, registry=ECR_HOST).fetch()
        message = str(caught.value)
        assert ECR_HOST in message
        assert "ecr:GetAuthorizationToken failed: AccessDeniedException" in message

    async def test_undecodable_token_is_refused(self, aws, aiohttp_server):
        """A token that is not base64 of user:password is refused without repeating it."""
        async def token(request: web.Request) -> web.Response:
            data = {"authorizationToken": base64.b64encode(SECRET.encode()).decode(),
                    "expiresAt": 1.9e9}
            return web.json_response({"authorizationData": [data]},
                                     content_type="application/x-amz-json-1.1")

        app = web.Application()
        app.router.add_post("/", token)
        server = await aiohttp_server(app, host="127.0.0.1")
        settings = EcrSettings(region=aws.region, endpoint_url=str(server.make_url("/")))
        with pytest.raises(CredentialError, match="not base64 of user:password") as caught:
            await EcrSource(settings, registry=ECR_HOST).fetch()
        assert SECRET not in str(caught.value)


def make_helper(tmp_path: Path, script: str, name: str = "testhelper") -> dict[str, str]:
    """Write ``docker-credential-<name>`` into a fresh bin dir; returns the env that finds it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HELPER_DIR": str(tmp_path)}


def assert_no_secret(error: BaseException) -> None:
    """Neither the message nor a chained exception carries the helper's output."""
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.__cause__ is None
    assert error.__context__ is None or SECRET not in repr(error.__context__)


class TestHelperSource:
    async def test_success(self, tmp_path):
        """The server URL goes to stdin; Username and Secret come from stdout."""
        env = make_helper(tmp_path, f"""
[ "$1" = get ] || exit 9
cat > "$HELPER_DIR/stdin"
echo '{{"ServerURL":"x","Username":"alice","Secret":"{SECRET}"}}'
""")
        source = HelperSource("testhelper", registry="registry.example.com:5000", env=env)
        credential = await source.fetch()
        assert (tmp_path / "stdin").read_text() == "registry.example.com:5000"
        assert credential.username == "alice"
        assert credential.password.reveal() == SECRET
        assert not credential.identity_token
        assert credential.expires_at is None
        assert source.expiring

    async def test_docker_hub_server_url(self, tmp_path):
        """Docker Hub is asked for under its legacy key, as the docker CLI does."""
        env = make_helper(tmp_path, """
cat > "$HELPER_DIR/stdin"
echo '{"Username":"bob","Secret":"pw"}'
""")
        await HelperSource("testhelper", registry="docker.io", env=env).fetch()
        assert (tmp_path / "stdin").read_text() == "https://index.docker.io/v1/"

    async def test_helper_gets_the_given_env(self, tmp_path):
        """The helper runs with the env mapping it was given (e.g. AWS_PROFILE for ecr-login)."""
        env = make_helper(tmp_path, """
echo "$AWS_PROFILE" > "$HELPER_DIR/profile"
echo '{"Username":"AWS","Secret":"pw"}'
""")
        await HelperSource("testhelper", registry="r.example",
                           env={**env, "AWS_PROFILE": "team-a"}).fetch()
        assert (tmp_path / "profile").read_text() == "team-a\n"

    async def test_identity_token(self, tmp_path):
        """A ``<token>`` username marks an identity token."""
        env = make_helper(tmp_path, f"""
echo '{{"Username":"<token>","Secret":"{SECRET}"}}'
""")
        credential = await HelperSource("testhelper", registry="r.example", env=env).fetch()
        assert credential.identity_token
        assert credential.password.reveal() == SECRET

    async def test_timeout_kills_the_helper(self, tmp_path):
        """A helper that hangs is killed (with its children) and reported as a timeout."""
        env = make_helper(tmp_path, f"""
echo '{SECRET}'
sleep 30
""")
        source = HelperSource("testhelper", registry="r.example", env=env, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(CredentialError, match=r"did not answer within 0\.3s") as caught:
            await source.fetch()
        assert time.monotonic() - started < 5
        assert_no_secret(caught.value)

    async def test_nonzero_exit(self, tmp_path):
        """A failing helper is reported with its exit status and nothing it printed."""
        env = make_helper(tmp_path, f"""
echo '{{"Username":"alice","Secret":"{SECRET}"}}'
echo 'credentials not found: {SECRET}' >&2
exit 3
""")
        with pytest.raises(CredentialError, match="exited with status 3") as caught:
            await HelperSource("testhelper", registry="r.example", env=env).fetch()
        assert "docker-credential-testhelper" in str(caught.value)
        assert "r.example" in str(caught.value)
        assert_no_secret(caught.value)

    async def test_invalid_json(self, tmp_path):
        """Output that is not JSON is reported without repeating it."""
        env = make_helper(tmp_path, f"""
echo 'Username=alice Secret={SECRET}'
""")
        with pytest.raises(CredentialError, match="not a JSON object") as caught:
            await HelperSource("testhelper", registry="r.example", env=env).fetch()
        assert_no_secret(caught.value)

    async def test_missing_secret(self, tmp_path):
        """JSON without a Secret is an error, not an empty password."""
        env = make_helper(tmp_path, """
echo '{"Username":"alice"}'
""")
        with pytest.raises(CredentialError, match="returned no Secret"):
            await HelperSource("testhelper", registry="r.example", env=env).fetch()

    async def test_not_on_path(self, tmp_path):
        """The helper is looked up on the PATH of the given env, not the process's."""
        env = make_helper(tmp_path, "exit 0\n", name="other")
        with pytest.raises(CredentialError, match="not found on PATH"):
            await HelperSource("testhelper", registry="r.example", env=env).fetch()


class TestPasswordSource:
    async def test_env_var(self):
        """The password is read from the named variable."""
        source = PasswordSource("alice", env_var="REG_PW", file=None, env={"REG_PW": SECRET})
        credential = await source.fetch()
        assert (credential.username, credential.password.reveal()) == ("alice", SECRET)
        assert not source.expiring

    async def test_file_is_reread(self, tmp_path):
        """The password file is read on every fetch, so a rotation shows up."""
        path = tmp_path / "pw"
        path.write_text("first\n")
        source = PasswordSource("alice", env_var=None, file=path, env={})
        assert (await source.fetch()).password.reveal() == "first"
        path.write_text("second\n")
        assert (await source.fetch()).password.reveal() == "second"

    async def test_empty_variable(self):
        """An empty variable is an error naming the variable."""
        source = PasswordSource("alice", env_var="REG_PW", file=None, env={"REG_PW": ""})
        with pytest.raises(CredentialError, match="REG_PW is empty"):
            await source.fetch()


class TestDockerConfigSource:
    @staticmethod
    def config(tmp_path: Path, document: dict[str, object]) -> Path:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(document))
        return path

    async def test_auth_entry(self, tmp_path):
        """``auth`` is base64 of user:password; the password may contain ':'."""
        auth = base64.b64encode(b"alice:pa:ss").decode()
        path = self.config(tmp_path, {"auths": {"https://reg.example:5000/v2/": {"auth": auth}}})
        credential = await DockerConfigSource(path, registry="reg.example:5000").fetch()
        assert (credential.username, credential.password.reveal()) == ("alice", "pa:ss")

    async def test_username_password_entry(self, tmp_path):
        """Plain ``username``/``password`` fields are used when there is no ``auth``."""
        path = self.config(tmp_path, {"auths": {"reg.example": {"username": "bob",
                                                                "password": SECRET}}})
        credential = await DockerConfigSource(path, registry="reg.example").fetch()
        assert (credential.username, credential.password.reveal()) == ("bob", SECRET)

    async def test_identity_token(self, tmp_path):
        """``identitytoken`` wins and is marked as an identity token."""
        path = self.config(tmp_path, {"auths": {"https://index.docker.io/v1/": {
            "auth": base64.b64encode(b"u:p").decode(), "identitytoken": SECRET}}})
        credential = await DockerConfigSource(path, registry="docker.io").fetch()
        assert credential.identity_token
        assert credential.password.reveal() == SECRET

    async def test_cred_helper_entry(self, tmp_path):
        """A registry kept in ``credHelpers`` points the user at ``credentials.helper``."""
        path = self.config(tmp_path, {"credHelpers": {"reg.example": "ecr-login"}})
        with pytest.raises(CredentialError, match=r"configure credentials\.helper"):
            await DockerConfigSource(path, registry="reg.example").fetch()

    async def test_broken_json_keeps_no_trace_of_the_file(self, tmp_path: Path) -> None:
        """A broken config.json raises without chaining the decoder error, which holds the file."""
        path = tmp_path / "config.json"
        path.write_text('{"auths": {"reg.example": {"auth": "U0VDUkVULVZBTFVF"}')
        with pytest.raises(CredentialError, match="not a JSON object") as caught:
            await DockerConfigSource(path, registry="reg.example").fetch()
        assert caught.value.__context__ is None
        assert caught.value.__cause__ is None
