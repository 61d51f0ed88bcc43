"""The README's command blocks, marked `<!-- readme-NAME-start -->` ... `<!-- readme-NAME-end -->` around a bash
block. CI runs the `main` and `test` blocks (`python tests/readme_blocks.py main`), tests/test_readme.py the
`smoke` block, so the README cannot drift from what is run. Standard library only: CI calls it before installing."""

import os
import re
import sys

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_block(name: str) -> list[str]:
    text = open(README, encoding="utf-8").read()
    pattern = rf"<!-- readme-{name}-start -->\s*```bash\n(.*?)```\s*<!-- readme-{name}-end -->"
    block = re.search(pattern, text, re.S)
    if block is None:
        raise SystemExit(f"README.md has no readme-{name} block")
    return [line for line in block.group(1).splitlines() if line.strip()]


if __name__ == "__main__":
    print("\n".join(readme_block(sys.argv[1])))
