from modelviz.cli import main

main()
