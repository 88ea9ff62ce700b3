from ideogram_trt.cli import main

raise SystemExit(main())
