from clcc.demo import run_demo


def test_demo_takes_experiment_entries_and_prints_the_paired_interval(tmp_path, capsys):
    """Three selections, the paired interval and the pointer to the paper-protocol result; a
    dotted key in an entry works as in `clcc experiment` (it once failed in the demo)."""
    entry = "clcc:n=2,train.recalibrate_bn=true"
    grid = run_demo(tmp_path / "demo", ["supervised", entry], epochs=1)
    out = capsys.readouterr().out
    assert [r["method"] for r in grid["rows"]] == ["supervised", entry]
    assert grid["rows"][1]["selections"] == [0, 1, 2]
    [pair] = grid["comparisons"]
    assert pair["selections"] == [0, 1, 2] and len(pair["per_selection"]) == 3
    assert "  CLCC (n=2, recalibrated BN) − Supervised: " in out and "95 % interval [" in out
    assert 'docs/results.md, "Paper protocol on a GPU"' in out and "scripts/gpu-tables" in out
    saved = (tmp_path / "demo" / "grid" / "clcc-n2-train.recalibrate_bntrue-sel2" /
             "config.yaml").read_text()
    assert "recalibrate_bn: true" in saved
