from dossier_verify.cli import main

raise SystemExit(main())
