from fundus_review.cli import main

raise SystemExit(main())
