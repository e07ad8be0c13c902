"""The shipped real-speech test set: permissively licensed recordings from PyPI packages
(clean/, MANIFEST.json, LICENSES/), rebuilt by tools/build_realspeech.py."""
