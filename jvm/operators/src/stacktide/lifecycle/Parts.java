package stacktide.lifecycle;

import java.util.Objects;

/** The value types of an instance's state ({@code jobs.lifecycle}'s dataclasses). */
public final class Parts {
    private Parts() {}

    /** A flavor as one snapshot described it. */
    public static final class Flavor {
        public final String flavorId;
        public final String flavorName;
        public final Long vcpus;
        public final Long memoryMb;
        public final Long rootGb;
        public final Long ephemeralGb;
        public final String instanceTypeId;

        public Flavor(String flavorId, String flavorName, Long vcpus, Long memoryMb, Long rootGb,
                      Long ephemeralGb, String instanceTypeId) {
            this.flavorId = flavorId;
            this.flavorName = flavorName;
            this.vcpus = vcpus;
            this.memoryMb = memoryMb;
            this.rootGb = rootGb;
            this.ephemeralGb = ephemeralGb;
            this.instanceTypeId = instanceTypeId;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof Flavor)) {
                return false;
            }
            Flavor f = (Flavor) o;
            return Objects.equals(flavorId, f.flavorId) && Objects.equals(flavorName, f.flavorName)
                    && Objects.equals(vcpus, f.vcpus) && Objects.equals(memoryMb, f.memoryMb)
                    && Objects.equals(rootGb, f.rootGb) && Objects.equals(ephemeralGb, f.ephemeralGb)
                    && Objects.equals(instanceTypeId, f.instanceTypeId);
        }

        @Override
        public int hashCode() {
            return Objects.hash(flavorId, flavorName, vcpus, memoryMb, rootGb, ephemeralGb,
                    instanceTypeId);
        }
    }

    /** An image as one snapshot described it. */
    public static final class Image {
        public final String imageRef;
        public final String osType;
        public final String osArchitecture;
        public final String osDistro;
        public final String osVersion;

        public Image(String imageRef, String osType, String osArchitecture, String osDistro,
                     String osVersion) {
            this.imageRef = imageRef;
            this.osType = osType;
            this.osArchitecture = osArchitecture;
            this.osDistro = osDistro;
            this.osVersion = osVersion;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof Image)) {
                return false;
            }
            Image i = (Image) o;
            return Objects.equals(imageRef, i.imageRef) && Objects.equals(osType, i.osType)
                    && Objects.equals(osArchitecture, i.osArchitecture)
                    && Objects.equals(osDistro, i.osDistro) && Objects.equals(osVersion, i.osVersion);
        }

        @Override
        public int hashCode() {
            return Objects.hash(imageRef, osType, osArchitecture, osDistro, osVersion);
        }
    }

    /** The usage-relevant part of one snapshot, at its time; ordered by (at, key). */
    public static final class Sample {
        public final long at;
        public final long key;
        public final String state;
        public final Flavor flavor;
        public final Image image;
        public final Long launched;

        public Sample(long at, long key, String state, Flavor flavor, Image image, Long launched) {
            this.at = at;
            this.key = key;
            this.state = state;
            this.flavor = flavor;
            this.image = image;
            this.launched = launched;
        }

        boolean empty() {
            return state == null && flavor == null && image == null && launched == null;
        }
    }

    /** A launched_at the stream saw, as the first snapshot carrying it described it. */
    public static final class Launch {
        public final long launched;
        public final long at;
        public final long key;
        public final Flavor flavor;
        public final Image image;

        public Launch(long launched, long at, long key, Flavor flavor, Image image) {
            this.launched = launched;
            this.at = at;
            this.key = key;
            this.flavor = flavor;
            this.image = image;
        }
    }

    /** A last-writer-wins register: the value of the newest (at, key) that set it. */
    public static final class Register {
        public final long at;
        public final long key;
        public final Object value;

        public Register(long at, long key, Object value) {
            this.at = at;
            this.key = key;
            this.value = value;
        }
    }

    /** Python's tuple order on (at, key). */
    public static int compare(long at1, long key1, long at2, long key2) {
        int c = Long.compare(at1, at2);
        return c != 0 ? c : Long.compare(key1, key2);
    }
}
