"""The shipped models, package data of ``yolo_cli.models`` (setup.cfg maps this folder into the
package, so an installed wheel carries them; :data:`yolo_cli.config.MODELS_DIR` finds them through
``importlib.resources``)."""
