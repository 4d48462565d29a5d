"""Language-image pretraining of a CLIP on a caption dataset (``svllreid pretrain``): contrastive, with
open_clip's loss, on the training package's fit loop; the result is a CLIP that ReID training starts from."""
