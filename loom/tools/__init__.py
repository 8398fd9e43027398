"""Tools as executables (SPEC 12): plugins found in folders (`discovery`), described once
and cached (`describe`), chosen per agent (`scope`), run under limits (`process`,
`invoke`), and offered to the model by a running agent (`toolbox`)."""
