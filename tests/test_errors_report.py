"""report.md shows prompts, completions and names as text, never as HTML or markup (issue 10, family 4)."""

import re

import pytest

from rewardkit.evaluate.pipeline import build_result
from rewardkit.evaluate.report import code, lit, md_code, md_text, render_html, render_markdown, Block, write_report
from rewardkit.evaluate.sampling import Generations

HOSTILE = [
    "<script>alert(1)</script> | a\nb",
    '<img src=x onerror="alert(1)">',
    "**bold** and _em_ and ~~struck~~",
    "[click](javascript:alert(1)) ![img](http://x/y.png)",
    "`code` and ``more`` and \\| a backslash",
    "&lt;b&gt; entities &amp; <!-- a comment --> <b>tag</b>",
    "| col | col |\n|---|---|\n| injected | row |",
    "#Person1#: line one\r\n#Person2#: line two\rthree",
    "<https://example.com> and <details><summary>x</summary>",
]


def rendered(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(markdown)


def visible(html_text: str) -> str:
    """The text a browser shows for some HTML (tags dropped, entities decoded)."""
    import html

    return html.unescape(re.sub(r"<[^>]*>", "", html_text))


@pytest.mark.parametrize("text", HOSTILE)
def test_a_table_cell_renders_as_its_text(text):
    page = rendered(render_markdown([Block("table", headers=["#", "completion"], rows=[["1", text]])]))
    assert "<script" not in page and "<img" not in page and "<a " not in page and "<strong>" not in page
    assert "<em>" not in page and "<code>" not in page and "<del>" not in page and "<s>" not in page
    assert "<b>" not in page and "<details>" not in page and "<!--" not in page
    assert page.count("<tr>") == 2 and page.count("<td>") == 2  # one row of two cells: the table is intact
    cell = re.findall(r"<td>(.*?)</td>", page, re.S)[-1]
    assert visible(cell) == " ".join(text.splitlines())


@pytest.mark.parametrize("text", HOSTILE)
def test_a_quoted_value_in_a_paragraph_renders_as_its_text(text):
    md = render_markdown([Block("p", f"**{lit(text)}** judged {lit(text)}; recipe {code(text)}.")])
    page = rendered(md)
    assert page.count("<strong>") == 1 and page.count("<code>") == 1  # only the report's own marks
    assert "<script" not in page and "<img" not in page and "<a " not in page and "<b>" not in page
    flat = " ".join(text.splitlines())
    strong = re.search(r"<strong>(.*?)</strong>", page, re.S).group(1)
    assert visible(strong) == flat
    assert visible(re.search(r"<code>(.*?)</code>", page, re.S).group(1)) == flat
    assert md.count("\n") == 1  # newlines in a value cannot start a new block


@pytest.mark.parametrize("text", HOSTILE)
def test_headings_and_warnings_are_literal(text):
    page = rendered(render_markdown([Block("h2", f"Largest changes, by {text}"), Block("warn", text)]))
    assert "<script" not in page and "<img" not in page and "<a " not in page and "<b>" not in page
    heading = re.search(r"<h2>(.*?)</h2>", page, re.S).group(1)
    assert visible(heading) == "Largest changes, by " + " ".join(text.splitlines())


@pytest.mark.parametrize("text", HOSTILE)
def test_html_and_markdown_agree(text, tmp_path):
    blocks = [Block("p", f"**{lit(text)}** and {code(text)}"), Block("table", headers=["x"], rows=[[text]])]
    page = render_html(blocks, tmp_path)
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert page.count("<strong>") == 1 and page.count("<code>") == 1
    md_page = rendered(render_markdown(blocks))
    norm = lambda s: " ".join(s.split())  # noqa: E731
    assert norm(visible(re.search(r"<strong>(.*?)</strong>", page, re.S).group(1))) == \
        norm(visible(re.search(r"<strong>(.*?)</strong>", md_page, re.S).group(1)))


def test_code_spans_fence_past_backticks():
    assert md_code("a ` b") == "``a ` b``"
    assert md_code("``x``") == "``` ``x`` ```"
    assert md_code("Summarize:") == "`Summarize:`"


def test_ordinary_text_stays_readable_in_the_file():
    assert md_text("#Person1#: hello [0.1, 0.2]") == "#Person1#: hello [0.1, 0.2]"
    assert md_text("a | b") == "a \\| b"
    assert md_text("1 < 2 & 3 > 2") == "1 &lt; 2 &amp; 3 &gt; 2"


def test_a_whole_report_with_hostile_text(tmp_path):
    hostile = "<script>alert(1)</script> | a\nb"
    prompts = [f"Summarize: {hostile} one.", "Summarize: two **x**.", "Summarize: three [l](http://e).",
               "Summarize: four."]
    before = Generations([hostile, "`tick`", "<img src=x onerror=alert(1)>", "fine"], [3, 3, 3, 3])
    after = Generations(["ok", hostile + " again", "better", "fine"], [1, 3, 1, 1])
    scores = {"reward/total": ([0.0, 2.0, -0.5, 2.0], [2.0, 0.5, 2.0, 2.0]),
              "reward/<b>x</b>": ([0.0, 2.0, -0.5, 2.0], [2.0, 0.5, 2.0, 2.0]),
              "judge/j": ([0.9, 0.1, 0.95, 0.05], [0.1, 0.8, 0.05, 0.05])}
    judges = [{"key": "j", "title": "P(<i>profane</i>) | x", "description": "desc <script>x</script>\nline",
               "higher_is_better": False, "independent": True, "text": "completion"}]
    header = {"run_dir": "runs/<b>run</b>", "recipe": "recipes/`odd`.yaml", "adapter": "runs/a|b/adapter",
              "model": "m", "device": "<cpu>",
              "config": {"num_samples": 4, "requested_samples": 4, "test_prompts": 10, "batch_size": 2,
                         "seed": 1, "judges": ["x"], "generation": {}}}
    result = build_result(header, prompts, None, before, after, scores, judges, {"<b>x</b>": 1.0}, seed=1)
    write_report(result, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "<script" not in md and "<img" not in md and "<b>" not in md and "<i>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| a b" in md
    page = rendered(md)
    assert "<script" not in page and "<b>" not in page
    assert "<a " not in page and re.findall(r"<img [^>]*>", page) == [
        f'<img src="{p}" alt="{a}" />' for p, a in re.findall(r'<img src="([a-z]+\.png)" alt="([^"<>]*)" />', page)]
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        widths = {row.count("<td>") + row.count("<th>") for row in re.findall(r"<tr>.*?</tr>", table, re.S)}
        assert len(widths) == 1, table  # no cell spilled into another column
    html_page = (tmp_path / "report.html").read_text()
    assert "<script>" not in html_page and "<b>run" not in html_page
    import json

    data = json.loads((tmp_path / "eval.json").read_text())
    assert all("\ue000" not in w and "\ue001" not in w for w in data["warnings"])
