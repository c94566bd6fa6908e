import sys

from ntkbook.cli import main

if __name__ == "__main__":
    sys.exit(main())
