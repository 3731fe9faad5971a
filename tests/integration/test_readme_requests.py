"""The README's "Requests for the main jobs" block, run as written: each command through bash
(curl against the app served on loopback, `billing` against the test database), each answer
checked against its `# answers` line, the values it says to save passed to the next commands."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.settings import PROJECT_ROOT
from tests.integration.conftest import Tenant

README = PROJECT_ROOT / "README.md"
_ANSWERS = re.compile(r"^# answers (\d{3})(?:; (.*))?$")
_SAVE = re.compile(r"^save (.+)$")
_EXPECT = re.compile(r"^expect (.+)$")


@dataclass
class Step:
    command: str
    status: int | None = None
    saves: dict[str, str] = field(default_factory=dict)  # variable -> .path
    expects: dict[str, str] = field(default_factory=dict)  # .path -> value


def _block() -> list[str]:
    text = README.read_text()
    section = text[text.index("### Requests for the main jobs") :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("\n```", start)].splitlines()


def _is_complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text)
    except ValueError:  # a quote still open: the command goes on on the next line
        return False
    return True


def steps() -> tuple[dict[str, str], list[Step]]:
    """The variables the block sets first, and its commands with what they should answer."""
    preset: dict[str, str] = {}
    found: list[Step] = []
    pending: list[str] = []
    for line in _block():
        if pending:
            pending.append(line)
            if _is_complete("\n".join(pending)):
                found.append(Step("\n".join(pending)))
                pending = []
            continue
        answers = _ANSWERS.match(line)
        if answers:
            step = found[-1]
            step.status = int(answers.group(1))
            for clause in (answers.group(2) or "").split("; "):
                if saved := _SAVE.match(clause):
                    for item in saved.group(1).split(", "):
                        path, _, name = item.partition(" as ")
                        step.saves[name] = path
                if expected := _EXPECT.match(clause):
                    for item in expected.group(1).split(", "):
                        path, _, value = item.partition(" = ")
                        step.expects[path] = value
        elif assignment := re.match(r"^([A-Z_]+)=(\S+)", line):
            preset[assignment.group(1)] = assignment.group(2)
        elif line.startswith(("curl ", ".venv/bin/billing ")):
            pending = [line]
            if _is_complete(line):
                found.append(Step(line))
                pending = []
    assert not pending, f"unfinished command in the README: {pending}"
    return preset, found


def _at(document: Any, path: str) -> Any:
    for part in path.removeprefix(".").split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def test_the_readme_block_covers_the_main_jobs() -> None:
    preset, found = steps()
    assert set(preset) == {"BASE", "OPERATOR_KEY"}
    urls = " ".join(step.command for step in found)
    for job in ("/v1/signup", "/v1/usage/events", "/v1/usage/events/batch", "/v1/usage/summary",
                "/v1/invoices/upcoming", "/change-quote", "/change-plan", "/v1/invoices",
                "/v1/finance/exports/", "billing close-periods"):  # fmt: skip
        assert job in urls, job
    for step in found:
        if step.command.startswith("curl"):
            assert step.status is not None, f"no '# answers' line after: {step.command}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_readme_requests_do_what_it_says(
    served_url: str, operator: Tenant, database_dsn: str, tmp_path: Path
) -> None:
    _, found = steps()
    # curl prints the status after the body (a .curlrc the README's commands know nothing of).
    (tmp_path / ".curlrc").write_text('write-out = "\\n%{http_code}"\n')
    (tmp_path / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    env = {
        **os.environ,
        "CURL_HOME": str(tmp_path),
        "BASE": served_url,
        "OPERATOR_KEY": operator.key,
        "DATABASE_URL": database_dsn,
        "BILLING_ENV": "test",
        "BILLING_LOG_LEVEL": "WARNING",
    }
    for step in found:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", step.command, env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, (step.command, err.decode())
        if step.status is None:
            continue
        body, _, status = out.decode().rpartition("\n")
        assert int(status) == step.status, (step.command, status, body)
        if step.saves or step.expects:
            answer = json.loads(body)
            for name, path in step.saves.items():
                env[name] = str(_at(answer, path))
            for path, value in step.expects.items():
                assert str(_at(answer, path)) == value, (step.command, path, body)
    assert "小李卡券店" in (tmp_path / "invoice.html").read_text()
    register = (tmp_path / "invoices.csv").read_text()
    assert register.startswith("number,") or "number" in register.splitlines()[0]
    assert len(register.splitlines()) >= 3  # a header and the merchant's invoices
