from clcc.demo import run_demo


def test_demo_trains_each_method_and_prints_the_table(tmp_path, capsys):
    results = run_demo(tmp_path / "demo", ["supervised", "clcc:n=2"], epochs=1)
    out = capsys.readouterr().out
    assert [r["method"] for r in results] == ["supervised", "clcc"]
    assert "| supervised |" in out and "| clcc:n=2 |" in out
    assert (tmp_path / "demo" / "runs" / "clcc-n2" / "best.pt").exists()
