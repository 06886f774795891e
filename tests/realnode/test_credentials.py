"""Both kubelet credentials the chart offers capture through the real kubelet's webhook
authentication and authorisation: the agent ServiceAccount's token (TokenReview +
SubjectAccessReview) and a client certificate allowed ``create nodes/checkpoint``."""

from __future__ import annotations

import pytest
from tests.realnode.support import RealNodeEnv


@pytest.mark.parametrize("cert", [False, True], ids=["token", "client-certificate"])
def test_agent_captures_with_either_kubelet_credential(real_env: RealNodeEnv, cert: bool) -> None:
    real_env.busybox_pod("credentials", "sleep 3600")
    real_env.start_agent(cert=cert)
    try:
        calls = real_env.node.runtime_calls()
        obj = real_env.capture(
            f"credentials-{'cert' if cert else 'token'}", {"podName": "credentials"}
        )
        status = obj["status"]
        assert status["phase"] == "Completed", status
        assert real_env.node.runtime_calls() == calls + 1
        processes = status["containers"][0]["summary"]["processes"]
        assert any("sleep 3600" in p["cmdline"] for p in processes), processes
    finally:
        if cert:
            real_env.start_agent()
        real_env.delete_pod("credentials")
