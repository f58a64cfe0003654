from flowatlas.cli.main import main

main()
