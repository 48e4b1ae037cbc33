from fundus_review.cli.main import main

raise SystemExit(main())
