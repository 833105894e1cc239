# The parts of the fake Avala API that tests/fake_avala.py runs and whose contract
# its docstring is: model, images, messages, state, api, control and server.
