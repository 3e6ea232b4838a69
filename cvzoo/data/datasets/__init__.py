"""The torch ``Dataset`` of each task, built from canonical annotations (``cvzoo.data.types``):
classification (image folders and the array sources), detection, segmentation, and the pairs and
triplets of metric learning."""
