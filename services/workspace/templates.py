"""What a new project starts with: a README and a .gitignore for each template, and a few
starter files for the language templates."""

from __future__ import annotations

from collections.abc import Mapping

_COMMON_IGNORES = ".DS_Store\n*.swp\n*~\n.env\n"

_README = "# {name}\n\n{about}\n"

TEMPLATES: Mapping[str, Mapping[str, str]] = {
    "empty": {
        "README.md": _README.replace("{about}", "A new project."),
        ".gitignore": _COMMON_IGNORES,
    },
    "python": {
        "README.md": _README.replace(
            "{about}", "A Python project.\n\n```sh\npython -m venv .venv\npython main.py\n```"
        ),
        ".gitignore": _COMMON_IGNORES
        + "__pycache__/\n*.py[cod]\n.venv/\nvenv/\n*.egg-info/\ndist/\nbuild/\n"
        + ".pytest_cache/\n.mypy_cache/\n.ruff_cache/\n.coverage\n",
        "main.py": 'def main() -> None:\n    print("hello")\n\n\nif __name__ == "__main__":\n'
        "    main()\n",
        "requirements.txt": "",
    },
    "node": {
        "README.md": _README.replace("{about}", "A Node.js project.\n\n```sh\nnpm start\n```"),
        ".gitignore": _COMMON_IGNORES
        + "node_modules/\nnpm-debug.log*\nyarn-error.log\ndist/\ncoverage/\n",
        "package.json": '{\n  "name": "{slug}",\n  "version": "0.1.0",\n  "private": true,\n'
        '  "main": "index.js",\n  "scripts": {\n    "start": "node index.js"\n  }\n}\n',
        "index.js": 'console.log("hello");\n',
    },
    "notes": {
        "README.md": _README.replace("{about}", "Notes, one Markdown file per topic."),
        ".gitignore": _COMMON_IGNORES,
        "notes/first-note.md": "# First note\n",
    },
}

DEFAULT_TEMPLATE = "empty"


def template_files(template: str, name: str) -> dict[str, str]:
    """The files of `template` for a project called `name` (a KeyError for an unknown one)."""
    slug = name.lower()
    return {
        path: text.replace("{name}", name).replace("{slug}", slug)
        for path, text in TEMPLATES[template].items()
    }


# The user's default project (see `Projects.locate_or_home`) starts with no files at all, so a
# client of the seed's /files routes lists exactly the files it wrote. Not offered to
# CreateProject: it labels that one project.
HOME_TEMPLATE = "home"
