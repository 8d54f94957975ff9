from cachesvc.cli import main

raise SystemExit(main())
