"""python -m clampgen.ui: the same as `clampgen ui`."""

from clampgen.ui.server import main

if __name__ == "__main__":
    raise SystemExit(main())
