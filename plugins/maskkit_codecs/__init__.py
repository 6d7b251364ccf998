"""maskkit's built-in codecs: ``stft`` (the default) and ``encodec`` (optional).

Registered through the entry point ``codecs`` in maskkit's ``pyproject.toml``, exactly as a
third-party plugin would. This module stays light: the codec classes (and torch) are
imported only when the hook runs, and the ``encodec`` package only when an ``encodec``
codec is instantiated.
"""

from maskkit import hookimpl

MASKKIT_PLUGIN_API = 1


@hookimpl
def register_codecs(register):
    from .encodec_codec import EncodecCodec
    from .stft import STFTCodec

    register(STFTCodec)
    register(EncodecCodec)
