from clcc.cli import main

raise SystemExit(main())
