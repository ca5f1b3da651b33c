from piilab.cli import main

raise SystemExit(main())
