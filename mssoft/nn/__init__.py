"""The TensorFlow/Keras layer: U-Net, loss, training metric, augmentation, ``tf.data`` pipeline,
training loops, distribution strategies, callbacks, a per-batch progress bar, model loading,
SavedModel export, slice-wise inference and the compiled model kept from run to run. The
modules that build, train or load models import TensorFlow; :mod:`mssoft.nn.inference` and
:mod:`mssoft.nn.model_reuse` do not."""
