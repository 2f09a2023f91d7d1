"""`.ci/run` runs exactly the test command the README gives a newcomer."""

from yolo_cli.config import PACKAGE_ROOT


def test_ci_runs_the_readme_test_command():
    readme = (PACKAGE_ROOT / "README.md").read_text().splitlines()
    marker = readme.index("<!-- test-command -->")
    assert readme[marker + 1] == "```sh"
    command = readme[marker + 2]
    script = (PACKAGE_ROOT / ".ci" / "run").read_text().splitlines()
    assert script[-1] == command
    assert "pytest" in command
