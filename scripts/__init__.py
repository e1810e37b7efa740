"""Operations scripts (run from the shell); the tests import ``free_port`` from here."""
