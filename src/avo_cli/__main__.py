from avo_cli.cli import main

main()
