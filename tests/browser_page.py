"""Pages opened in a real headless browser: Debian's chromium, driven by Playwright through its
executable path (`make browser` installs it; a missing browser fails the tests that ask for one,
never skips them). The ``browser`` fixture is in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path


class LoadedPage:
    """A page opened from a file, with what it logged and what it requested."""

    def __init__(self, browser, path: Path, plots: bool = True) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        if not plots:
            return
        # BokehJS has built the document and the views of its roots.
        self.page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length === 1 "
            "&& Bokeh.documents[0].roots().every((root) => Bokeh.index[root.id])"
        )

    def model_length(self, name: str) -> int:
        return self.page.evaluate(
            "(name) => Bokeh.documents[0].get_model_by_name(name).data_source.get_length()",
            name,
        )

    def hover_glyph(self, figure: str, renderer: str, key: str) -> str:
        """Move the mouse to the middle of the task glyph of ``key`` and return the text of
        the tooltips then shown."""
        x, y = self.page.evaluate(
            """([figureName, rendererName, key]) => {
                const document = Bokeh.documents[0];
                const figure = document.get_model_by_name(figureName);
                const data = document.get_model_by_name(rendererName).data_source.data;
                const row = Array.from(data.get ? data.get("key") : data.key).indexOf(key);
                const column = (name) => (data.get ? data.get(name) : data[name])[row];
                const view = Bokeh.index[figure.id];
                const canvas = view.canvas_view.el.getBoundingClientRect();
                const x = view.frame.x_scale.compute((column("left") + column("right")) / 2);
                const y = view.frame.y_scale.compute((column("bottom") + column("top")) / 2);
                return [canvas.left + x, canvas.top + y];
            }""",
            [figure, renderer, key],
        )
        self.page.mouse.move(x - 40, y)
        self.page.mouse.move(x, y)
        tooltip = self.page.locator(".bk-tooltip-content")
        tooltip.first.wait_for(state="visible", timeout=5000)
        return "\n".join(tooltip.nth(index).inner_text() for index in range(tooltip.count()))

    def close(self) -> None:
        self.page.close()
