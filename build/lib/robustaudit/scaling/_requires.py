"""Image-scaling audits need the `[scaling]` extra (OpenCV, OSQP, scikit-image): checked before any of it loads."""

from robustaudit.extras import require

for _module in ("cv2", "osqp", "skimage"):
    require(_module, "image-scaling audits (robustaudit scaling ...)")
