"""The office side: the site database, people and credentials, bundles, log intake."""
