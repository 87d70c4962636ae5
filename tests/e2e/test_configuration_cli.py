"""The configuration, profiles and templates from the command line, as an operator uses them."""

from __future__ import annotations

import json

CONFIG = """
user = "from-file"
notify = ["json://alice:s3cret@hooks.example.com/t0ken"]

[policy]
max_concurrency = 2

[agents.writer]
kind = "sim"
latency_ms = 0
output = "written by the library agent"

[mcp_servers.vault]
url = "http://127.0.0.1:9/mcp?key=${VAULT_KEY}"
env = { TOKEN = "${VAULT_TOKEN}" }

[profiles.careful]
description = "one step at a time"
policy = { max_concurrency = 1, token_budget = 100000 }
"""


def configured(cli, text: str = CONFIG):
    path = cli.tmp / "config.toml"
    path.write_text(text)
    cli.env["LOOPDECK_CONFIG"] = str(path)
    return path


def test_config_shows_each_value_its_source_and_no_secret(cli):
    configured(cli)
    cli.env["LOOPDECK_LEASE_S"] = "20"
    cli.env["LOOPDECK_THEME"] = "nord"
    result = cli("config", "--json", "--db", "postgresql://bob:pa55word@db.example.com/loopdeck")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    values = shown["values"]
    assert shown["file"].endswith("config.toml") and shown["file_exists"]
    assert values["db"] == {"value": "postgresql://bob:***@db.example.com/loopdeck", "from": "flag --db"}
    assert values["lease_s"] == {"value": 20.0, "from": "env LOOPDECK_LEASE_S"}
    assert values["user"] == {"value": "from-file", "from": "file"}
    assert values["theme"] == {"value": "nord", "from": "env LOOPDECK_THEME"}
    assert values["policy.max_concurrency"] == {"value": 2, "from": "file"}
    assert values["policy.max_step_attempts"] == {"value": 3, "from": "default"}
    assert values["agents.writer"]["value"]["output"] == "written by the library agent"
    assert values["notify"]["value"] == ["json://hooks.example.com/***"]
    assert values["mcp_servers.vault"]["value"]["env"] == {"TOKEN": "***"}
    assert values["profiles.careful"] == {"value": "max_concurrency=1, token_budget=100000", "from": "file"}
    text = result.stdout + cli("config").stdout
    for secret in ("s3cret", "t0ken", "alice", "pa55word"):
        assert secret not in text


def test_an_invalid_configuration_is_one_line_with_file_line_and_field_and_exit_2(cli):
    path = configured(cli, "[policy]\nmax_concurrency = 0\n")
    for command in (("runs",), ("config",), ("demo", "--headless")):
        result = cli(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert f"{path}:2: policy.max_concurrency: Input should be greater than or equal to 1" in result.stderr
        assert "Traceback" not in result.stderr
    assert cli("--help").returncode == 0  # help never reads it


def test_a_plan_names_a_library_agent_and_a_profile_and_the_run_records_both(cli):
    configured(cli)
    plan = cli.write_plan({"goal": "use the library", "steps": [{"key": "w", "agent": "writer"}]})
    result = cli("run", str(plan), "--headless", "--profile", "careful", "--json")
    assert result.returncode == 0, result.stderr
    assert "profile careful (from config " in result.stderr
    run = json.loads(result.stdout)
    assert run["steps"][0]["output"] == "written by the library agent"
    assert run["run"]["profile"]["name"] == "careful"
    assert run["run"]["profile"]["policy"] == {"max_concurrency": 1, "token_budget": 100000}
    assert run["run"]["max_concurrency"] == 1 and run["run"]["token_budget"] == 100000
    listed = json.loads(cli("runs", "--json").stdout)
    assert listed[0]["profile"] == "careful"
    unknown = cli("run", str(plan), "--headless", "--profile", "carefull")
    assert unknown.returncode == 2 and 'did you mean "careful"' in unknown.stderr


def test_profiles_lists_the_configurations_and_a_plans_with_what_they_change(cli):
    configured(cli)
    plan = cli.write_plan(
        {"profiles": {"fast": {"description": "no review", "policy": {"max_concurrency": 8}}}, "steps": [{"key": "a"}]}
    )
    result = cli("profiles", "--json", "--plan", str(plan))
    assert result.returncode == 0, result.stderr
    found = {p["name"]: p for p in json.loads(result.stdout)}
    assert found["careful"]["from"] == "config" and found["careful"]["policy"]["max_concurrency"] == 1
    assert found["fast"]["from"] == f"plan {plan}" and found["fast"]["changes"] == "max_concurrency=8"
    table = cli("profiles", "--plan", str(plan)).stdout
    assert "careful" in table and "one step at a time" in table and "fast" in table


def test_templates_new_and_run_from_a_template(cli):
    listed = json.loads(cli("templates", "--json").stdout)
    assert {t["name"] for t in listed} >= {"plan-execute-verify", "research-draft-review", "fix-until-green"}
    assert all(t["from"] == "built in" for t in listed)
    out = cli.tmp / "mine.yaml"
    made = cli("new", "plan-execute-verify", "--goal", "Ship v2", "--out", str(out))
    assert made.returncode == 0, made.stderr
    text = out.read_text()
    assert 'goal: "Ship v2"' in text and "# plan-execute-verify:" in text and "What to edit" in text
    again = cli("new", "plan-execute-verify", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("new", "plan-execute-verify", "--out", str(out), "--force").returncode == 0
    assert '"(write the goal here)"' in out.read_text()
    assert cli("new", "plan-exec").returncode == 2
    cli.env["LOOPDECK_CONFIG"] = str(cli.tmp / "none.toml")
    configured(cli, "[policy]\nmax_concurrency = 1\n")
    ran = cli(
        "run",
        "--template",
        "research-draft-review",
        "--goal",
        "A note on queues",
        "--headless",
        "--json",
        "--approve",
        "all",
    )
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["run"]["goal"] == "A note on queues" and run["run"]["status"] == "succeeded"
    assert run["run"]["max_concurrency"] == 3  # the template's own policy beats the file's


def test_a_template_without_a_goal_or_with_a_plan_file_is_refused(cli):
    plan = cli.write_plan({"steps": [{"key": "a"}]})
    for args in (
        ("run", "--template", "fix-until-green", "--headless"),
        ("run", str(plan), "--template", "fix-until-green", "--goal", "g", "--headless"),
        ("run", "--template", "nope", "--goal", "g", "--headless"),
        ("submit", "--template", "fix-until-green"),
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    submitted = cli("submit", "--template", "fix-until-green", "--goal", "g", "--json")
    assert submitted.returncode == 0, submitted.stderr
