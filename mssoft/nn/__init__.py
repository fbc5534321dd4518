"""The TensorFlow/Keras layer: U-Net, loss, training metric, augmentation, ``tf.data`` pipeline,
training loops, distribution strategies, callbacks and model loading. Importing any module here
imports TensorFlow."""
