from __future__ import annotations

from typer.testing import CliRunner

from ome.scheduler.cli import extender_app


def test_serve_help_lists_the_options() -> None:
    result = CliRunner().invoke(extender_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--policy", "--kubeconfig", "--tls-cert", "--tls-key", "--target"):
        assert option in result.output


def test_bad_arguments_fail_before_serving() -> None:
    runner = CliRunner()
    bad_policy = runner.invoke(extender_app, ["serve", "--policy", "nope"])
    assert bad_policy.exit_code != 0 and "unknown policy" in bad_policy.output
    half_tls = runner.invoke(extender_app, ["serve", "--tls-cert", "x.pem"])
    assert half_tls.exit_code != 0 and "go together" in half_tls.output
