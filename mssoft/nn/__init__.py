"""The TensorFlow/Keras layer: U-Net, loss, training metric, augmentation, ``tf.data`` pipeline,
training loops, distribution strategies, callbacks, a per-batch progress bar, model loading,
SavedModel export and slice-wise inference. The modules that build, train or load models import
TensorFlow; :mod:`mssoft.nn.inference` does not."""
