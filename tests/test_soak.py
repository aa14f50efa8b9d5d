"""benchmarks/soak.py, briefly: a search whose workers keep getting killed loses no trial.

``make soak`` runs the full one (300 candidates, a kill every 30 s); this runs a short one.
"""

import json

import pytest
from conftest import load, search_dir


@pytest.mark.slow
def test_a_short_soak_accounts_for_every_trial(tmp_path, capsys):
    out = tmp_path / "soak.json"
    result = load("benchmarks/soak.py").main(
        ["--trials", "20", "--kill-every", "8", "--max-epochs", "150", "--patience", "0",
         "--checkpoint-dir", str(tmp_path / "journal"), "--json", str(out)])
    assert result["problems"] == []
    assert result["finished"] == 20
    assert sum(result["by_status"].values()) == 20
    assert result["kills"] >= 1
    assert result["retried"] >= 1  # a kill interrupted a running trial, which ran again
    assert result["lost"] == result["by_status"].get("lost", 0)
    journal = (search_dir(tmp_path / "journal") / "journal.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trial_id"] for line in journal) == list(range(20))
    assert "every trial accounted for" in capsys.readouterr().out
    assert json.loads(out.read_text())["finished"] == 20
