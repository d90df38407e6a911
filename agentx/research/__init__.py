"""The technique catalog: research notes with mechanisms, priors and code recipes."""
