"""For a developer's machine: the embedded stack (tansu + SeaweedFS from pinned wheels),
the demo, the sample images it runs on, and the terminal progress display.
"""
