from modelviz.cli import run

run()
