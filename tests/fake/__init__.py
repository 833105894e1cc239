# The fake Avala API that tests/fake_avala.py serves, in parts: its model, its
# pictures, the API and its control routes, the HTTP server that carries them.
