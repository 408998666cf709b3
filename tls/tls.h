// TLS contexts and the TLS transport land with their issue; this folder is their home.
#pragma once
