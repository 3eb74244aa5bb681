from ctsdg.cli import main

raise SystemExit(main())
