"""``svllreid serve``: a web page and a JSON API over a gallery index, with the model loaded once.

:func:`create_app` (in :mod:`svllreid.serve.app`) needs the ``serve`` extra (FastAPI, uvicorn,
python-multipart); this package's other modules do not.
"""
