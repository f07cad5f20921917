import sys

from llm_operator.cli import main

sys.exit(main())
