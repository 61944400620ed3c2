"""Body layer: body models through smplx, joint maps, rotations, cameras, fast joints."""
