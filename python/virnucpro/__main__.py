from virnucpro.cli import main

main()
