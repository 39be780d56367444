from ntk_dist.cli import main

raise SystemExit(main())
