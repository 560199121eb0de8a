"""Human annotations of reconstructions: the items to annotate (`items`), CSV and SemSim-layout import/export
(`transfer`), and the local annotation web page (`server`, `page`). The rows themselves live in the results store."""
